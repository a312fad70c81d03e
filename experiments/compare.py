"""The comparison of searchers, runnable on its own: `python experiments/compare.py --budget 3m`.

The same as `nash compare` (every option is passed through), with defaults for the table in
README's "How nash compares": digits, 3 minutes, 3 seeds, NASH vs random search vs no search.
"""
import sys

from nash.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = {"--methods": "nash,random,none", "--seeds": "3", "--budget": "3m", "--out": "runs/compare-digits-3m"}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    main(["compare", *args])
