"""Sans-I/O venue codecs: one module per venue, all behind :class:`tickloop.venues.base.Codec`."""
