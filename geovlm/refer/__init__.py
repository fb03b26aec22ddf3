"""Referring expressions: rules that single out one object, their words, rewrites, grounding.

`rules` chooses `phrases` from geometry among a chip's objects, `scene` among a whole scene's
(both on `denotations`), `text` renders them in EN/JA/ZH, `rewriting` has a text model rephrase
them faithfully, and `grounding` reads a VLM's boxes back onto the map.
"""
