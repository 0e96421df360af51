"""Wire models (pydantic v2).

Each model's name carries its version; a new version is a new model. One exception, made for
every interface at once (issue 17): amounts became decimal strings within version 1
(`amounts`), the old forms still read during a transition, so no reader of version 1 broke.
"""
