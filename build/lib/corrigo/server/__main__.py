"""`python -m corrigo.server [FLAGS]` is `corrigo serve [FLAGS]`."""

import sys

from corrigo.client.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])
