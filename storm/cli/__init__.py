"""The `storm` command line (a typer app) and its rich dashboards.

`main` is the console script; `render_dashboard` draws one topology's figures and
is shared by `storm local` and, later, `storm monitor`."""

from ._app import app, main
from ._dashboard import compute_rates, render_dashboard

__all__ = ["app", "compute_rates", "main", "render_dashboard"]
