"""The review console 审核台, mounted by the service at /console (app.py has the pages; auth.py sign-in;
csrf.py form tokens; pages.py highlighting and overlays; charts.py SVG plots)."""

from .app import create_app

__all__ = ["create_app"]
