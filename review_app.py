"""Streamlit entry point: ``streamlit run review_app.py``. The app lives in the package
(``reviewqueue/ui/app.py``) so an installed reviewqueue can run it from anywhere."""

import runpy
from pathlib import Path

import reviewqueue.ui

runpy.run_path(str(Path(reviewqueue.ui.__file__).parent / "app.py"), run_name="__main__")
