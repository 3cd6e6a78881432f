from collections.abc import Callable
from typing import Any

SOURCE_DIGEST: str

class Publisher:
    fast: dict[str, tuple[Any, ...]]
    fast_calls: int
    ids: Any
    source: str
    state: object
    def __init__(
        self,
        fast: dict[str, Any],
        slow: Callable[[str, Any], Any],
        type_of: dict[type, str],
        event_type: Callable[..., Any],
        state: object,
    ) -> None: ...
    def __call__(self, topic: str, payload: Any, /) -> Any: ...

def set_state_type(cls: type, /) -> None: ...
