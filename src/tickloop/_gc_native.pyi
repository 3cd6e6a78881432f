from typing import Any, TypeVar

_T = TypeVar("_T", bound=tuple[Any, ...])

SOURCE_DIGEST: str

def untrack(obj: object, /) -> None: ...
def frozen_into(memo: dict[Any, Any], key: object, cls: type[_T], /, *items: object) -> _T: ...
