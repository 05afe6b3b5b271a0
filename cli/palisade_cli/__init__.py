"""The ``palisade`` command line: a thin dispatcher over the packages."""
