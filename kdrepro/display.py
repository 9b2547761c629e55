"""Small helpers that make a notebook read like an annotated paper."""

import inspect
from dataclasses import fields, is_dataclass

import pandas as pd
from IPython.display import Markdown, display


def show_source(*objects) -> None:
    """Show the code of functions or classes, so the equation in the text sits beside what implements it."""
    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    display(Markdown(f"```python\n{code}\n```"))


def show_protocol(protocol) -> None:
    """A profile's protocol as a two-column table; nested recipes on one line each."""
    def text(value) -> str:
        if is_dataclass(value):
            return ", ".join(f"{f.name}={getattr(value, f.name)}" for f in fields(value)
                             if getattr(value, f.name) != f.default)
        return str(value)
    show_table([{"setting": f.name, "value": text(getattr(protocol, f.name))} for f in fields(protocol)])


def show_table(rows: list[dict[str, object]]) -> None:
    display(pd.DataFrame(rows).style.hide(axis="index"))


def show_markdown(text: str) -> None:
    display(Markdown(text))
