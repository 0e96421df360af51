"""Technology at the edges: databases, buses, institutions."""
