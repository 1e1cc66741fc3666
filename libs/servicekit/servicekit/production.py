"""`python -m servicekit.production NAME...`: the services' production check, for secrets
that no imagemesh settings class reads. With `IMAGEMESH_ENV=production`, exit 2 with one
line naming every variable NAME that is unset, empty or a development secret of
`.env.example` (`DEVELOPMENT_SECRETS`); exit 0 otherwise, and always in development.

Compose's `production-check` job runs it for the servers and jobs that take a secret but
run no Python of ours (MinIO's root user, the CouchDB admin, Grafana's admin): they start
only once it has succeeded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from ._settings import DEVELOPMENT_SECRETS, development_refusal

NAME = "servicekit.production"
ENVIRONMENTS = ("development", "production")


def refusals(names: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """Why `environ` may not be used, one phrase per problem; none when it may."""
    env = environ.get("IMAGEMESH_ENV", "development")
    if env not in ENVIRONMENTS:
        # Not echoed as given: a misplaced line of a .env could hold anything.
        return ["IMAGEMESH_ENV must be development or production"]
    if env != "production":
        return []
    problems = []
    for name in names:
        value = environ.get(name, "")
        if not value:
            problems.append(f"{name} is required but not set")
        elif value in DEVELOPMENT_SECRETS:
            problems.append(development_refusal(name))
    return problems


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    if not names:
        print(f"usage: python -m {NAME} NAME...", file=sys.stderr)
        return 2
    env = os.environ if environ is None else environ
    if problems := refusals(names, env):
        print(f"{NAME}: invalid configuration: {'; '.join(problems)}", file=sys.stderr)
        return 2
    if env.get("IMAGEMESH_ENV", "development") == "production":
        print(f"{NAME}: {len(names)} secret(s) are not development defaults")
    else:
        print(f"{NAME}: IMAGEMESH_ENV=development, development secrets allowed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
