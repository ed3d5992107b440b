# book/book.mk — the Jupyter Book targets; `include book/book.mk` from the main Makefile (paths are
# relative to the repository root). The including Makefile may set the variables below first.
#
#   make book-html   copy $(EXECUTED)/*.ipynb into book/notebooks/ and write book/performance.md
#                    (book/tools/booktools.py), then build book/_build/html/index.html with warnings as
#                    errors. _toc.yml and api.md are static. Executing the notebooks (papermill) is the
#                    including Makefile's job.
#   make publish     book-html, then a self-contained static site book/_build/site/ (relative links only,
#                    .nojekyll) and its archive book/_build/sitsr-book.tar.gz.
#   make book-clean  remove the build and the generated sources.
#
# GitHub Pages: the site folder is ready for ghp-import (pip install ghp-import), which commits it to
# the gh-pages branch and pushes it:
#   ghp-import --no-jekyll --push --force book/_build/site
# Any other static host: unpack book/_build/sitsr-book.tar.gz; the book also opens from file://.

PY ?= .venv/bin/python
JB ?= .venv/bin/jupyter-book
EXECUTED ?= notebooks/executed
BENCH_RESULTS ?= benchmarks/results
BOOK_SRC ?= book
BOOK_TOOLS ?= book/tools/booktools.py

.PHONY: book-html publish book-clean

book-html:
	$(PY) $(BOOK_TOOLS) prepare --book $(BOOK_SRC) --executed $(EXECUTED) --results $(BENCH_RESULTS)
	$(JB) build --warningiserror $(BOOK_SRC)/

publish: book-html
	$(PY) $(BOOK_TOOLS) publish --html $(BOOK_SRC)/_build/html --site $(BOOK_SRC)/_build/site \
		--archive $(BOOK_SRC)/_build/sitsr-book.tar.gz

book-clean:
	rm -rf $(BOOK_SRC)/_build $(BOOK_SRC)/notebooks $(BOOK_SRC)/_generated $(BOOK_SRC)/performance.md
