"""The course site: the committed notebooks (with their outputs, never executed here) and the docs.

Build (offline): ``.venv/bin/sphinx-build -b html -c docs . build/site``, after
``LALORA_EXTRAS=docs bash scripts/setup.sh``; open ``build/site/docs/index.html``.
"""

project = "lalora-lite"
author = "the lalora-lite authors"
copyright = "the lalora-lite authors, MIT licence"  # noqa: A001 - Sphinx's name

extensions = ["myst_nb"]
root_doc = "docs/index"
# the site is made of these files of the repository, nothing else
include_patterns = ["README.md", "CONTRIBUTING.md", "docs/*.md", "notebooks/*.ipynb", "benchmarks/README.md"]
exclude_patterns = ["build", ".venv", "runs", "runs-carried"]

nb_execution_mode = "off"  # the committed outputs are the content
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "lalora-lite: DP federated LoRA, a course"
html_theme_options = {
    "repository_url": "https://github.com/lalora-lite/lalora-lite",
    "use_repository_button": True,
    "show_toc_level": 2,
}
