from array import array

STATE_SIZE: int

def feed(state: array[int], data: bytes, /) -> None: ...
