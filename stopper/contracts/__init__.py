"""Wire models (pydantic v2).

Each model's name carries its version; a new version is a new model.
"""
