"""Small helpers that make a notebook read like an annotated paper."""

import inspect

import pandas as pd
from IPython.display import Markdown, display


def show_source(*objects) -> None:
    """Show the code of functions or classes, so the equation in the text sits beside what implements it."""
    code = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)
    display(Markdown(f"```python\n{code}\n```"))


def show_table(rows: list[dict[str, object]]) -> None:
    display(pd.DataFrame(rows).style.hide(axis="index"))
