"""What the driver scripts share (run by scripts/psycopg): each script
computes its answers against every URL given (Mako, then PostgreSQL 15)
and they must all be the same."""

import sys


def same_everywhere(answers, check, summary):
    """Runs answers(url) for each URL on the command line, prints them,
    fails unless all are equal and check(first) holds, then prints
    summary."""
    urls = sys.argv[1:]
    results = [answers(url) for url in urls]
    for url, r in zip(urls, results):
        print(f"{url}: {r}")
    if any(r != results[0] for r in results):
        sys.exit("the servers answered differently")
    assert check(results[0]), results[0]
    print(summary)
