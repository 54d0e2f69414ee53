#!/bin/sh
# The whole test suite, from nothing: for each Python × Django pair, make a virtualenv,
# install, lint, type-check, check migrations, and run pytest on SQLite, PostgreSQL and
# MariaDB/MySQL (the end-to-end tests start their own databases on all three).
#   sh tests/run.sh                 # everything
#   MATRIX=3.11 sh tests/run.sh     # one pair only (3.11 = Python 3.11 + Django 5.2 LTS)
#   sh tests/run.sh -k worker       # extra arguments go to pytest
set -eu
cd "$(dirname "$0")/.."
MATRIX=${MATRIX:-"3.11 3.12"}
# The fault suite (tests/faults) and the whole end-to-end suite (tests/e2e) run once, with the
# first pair: they test the worker's behaviour with real processes, which no Python or Django
# version changes, and take most of the run. The other pairs run a smoke set of end-to-end
# tests (a worker starts, drains, survives kill -9, shuts down warm) beside every other test.
FAULTS_PAIR=${FAULTS_PAIR:-3.11}
# The unit and app tests run in two processes (pytest-xdist; each has its own test database
# and Redis database): most of their time is spent waiting on a server, not on a CPU.
# PARALLEL= (empty) runs them in one.
PARALLEL=${PARALLEL--n 2}
# The end-to-end and fault suites in two processes too (E2E_PARALLEL= runs them in one).
E2E_PARALLEL=${E2E_PARALLEL--n 2 --dist loadscope}
E2E_SMOKE="tests/e2e/test_startup.py tests/e2e/test_delivery.py tests/e2e/test_shutdown.py"
POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_URL=${TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
export TEST_POSTGRES_URL="$POSTGRES_URL" TEST_MYSQL_URL="$MYSQL_URL"

python_for() {  # an interpreter for Python $1 that really runs (pyenv shims may not)
    for candidate in "$(command -v "python$1" 2>/dev/null)" \
            $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python 2>/dev/null | sort -V | tail -1) \
            "$(command -v python3)"; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import sys; sys.exit(0 if sys.version.startswith('$1') else 1)" \
                2>/dev/null; then
            echo "$candidate"; return
        fi
    done
    echo "Python $1 not found" >&2; return 1
}

for pair in $MATRIX; do
    case $pair in
        3.11) django="django>=5.2,<5.3" ;;
        3.12) django="django>=6.1,<6.2" ;;
        *) django="django>=5.2" ;;
    esac
    python=$(python_for "$pair")
    venv=.venv/py$pair
    echo "=== Python $pair with $django"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[dev]" "$django"
    # mysqlclient compiles against libmariadb-dev (or libmysqlclient-dev) and pkg-config.
    if ! "$venv/bin/python" -m pip install -q -e ".[mysql]" "$django"; then
        [ "${CI:-}" = true ] && { echo "mysqlclient failed to install" >&2; exit 1; }
        echo "mysqlclient did not install (no MySQL client headers?): MariaDB tests will skip"
    fi
    "$venv/bin/ruff" check .
    "$venv/bin/mypy"
    "$venv/bin/python" manage.py makemigrations --check --dry-run
    echo "--- SQLite"
    sqlite="sqlite:///$(pwd)/.venv/test-$pair.sqlite3"
    DATABASE_URL="$sqlite" "$venv/bin/pytest" -m "not e2e and not faults" $PARALLEL "$@"
    if [ "$pair" = "$FAULTS_PAIR" ]; then
        # Two processes (each module's tests on one database together, every RabbitMQ test
        # in one of them: tests/conftest.py), then the tests that measure rates or count a
        # server's statements, alone. The slowest listed: most of the run's time is here.
        DATABASE_URL="$sqlite" "$venv/bin/pytest" -m "(e2e or faults) and not alone" \
            $E2E_PARALLEL --durations=25 "$@" || [ $? -eq 5 ]
        DATABASE_URL="$sqlite" "$venv/bin/pytest" -m "(e2e or faults) and alone" \
            --durations=10 "$@" || [ $? -eq 5 ]
    else  # 5: "-k" left none
        DATABASE_URL="$sqlite" "$venv/bin/pytest" $E2E_SMOKE "$@" || [ $? -eq 5 ]
    fi
    echo "--- PostgreSQL"
    DATABASE_URL="$POSTGRES_URL" "$venv/bin/pytest" -m "not e2e and not faults" $PARALLEL "$@"
    if "$venv/bin/python" -c "import MySQLdb" 2>/dev/null; then
        echo "--- MariaDB/MySQL"
        DATABASE_URL="$MYSQL_URL" "$venv/bin/pytest" -m "not e2e and not faults" $PARALLEL "$@"
    elif [ "${CI:-}" = true ]; then
        echo "MySQLdb is not importable and CI=true forbids skipping" >&2; exit 1
    else
        echo "--- MariaDB/MySQL skipped: mysqlclient is not installed"
    fi
done
