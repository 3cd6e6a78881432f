from typing import Any

SOURCE_DIGEST: str

class Reader:
    def __anext__(self) -> Any: ...

def set_stats_type(cls: type, /) -> None: ...
