"""The package version, in a module of its own so that code the package root loads on demand
(``fgvc.load``) can name it without importing the root back."""

__version__ = "0.1.0"
