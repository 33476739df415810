"""The default backbone's id, in a module that imports nothing, so that ``codecloss metric --help`` stays cheap."""

#: The codec trained and shipped by this project that every default uses (see docs/model_card.md).
DEFAULT_BACKBONE = "codecloss-wide-sem"
