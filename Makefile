# The commands of the README. Each sets up .venv (system python3) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-full test install browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fgvc demo

# every seed, both starts and every row of the demo's comparison (about 8 times as long)
demo-full: $(STAMP)
	$(VENV)/bin/fgvc demo --full

# The page's browser test drives Debian's chromium + chromium-driver (nothing is downloaded at test
# time). Installed here when missing on Debian as root; elsewhere that one test is skipped, with the
# reason in pytest's summary.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian) for the page's browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null) || echo "could not install them: the browser test will be skipped"; \
	else echo "no chromium/chromedriver and no way to install them (Debian, root): the browser test will be skipped"; fi

test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
