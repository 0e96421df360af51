"""`HttpWebhookTransport`: webhook deliveries POSTed with httpx, redirects never followed."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from stopper.app.webhook_delivery import PostOutcome


class HttpWebhookTransport:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        # No proxies from the environment, no redirects: a webhook goes where it was
        # registered (a redirect could lead it back into Stopper, or anywhere).
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> PostOutcome:
        """One attempt within `timeout_s` (connect, write and read alike); retries are the
        sender's (`WebhookSender`), after its backoff."""
        try:
            answer = await self._client.post(
                url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout_s)
            )
        except httpx.TimeoutException:
            return PostOutcome("timeout", None, f"no answer within {timeout_s:g}s")
        except httpx.ConnectError:
            return PostOutcome("unreachable", None, "the connection was refused or failed")
        except httpx.HTTPError as e:
            return PostOutcome("error", None, type(e).__name__)
        status = answer.status_code
        if 200 <= status < 300:
            return PostOutcome("delivered", status, "")
        if 300 <= status < 400:
            return PostOutcome("redirect", status, "redirects are not followed")
        return PostOutcome("http_error", status, f"answered {status}")

    async def close(self) -> None:
        await self._client.aclose()
