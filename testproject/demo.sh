#!/bin/sh
# The demo, from nothing: a virtualenv, the database, an admin login (admin/admin), a worker
# that also runs the beat (the demo's periodic tasks), and the web server on
# http://127.0.0.1:8000/ (Ctrl-C stops both).
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/demo/bin/python ] || python3 -m venv .venv/demo
.venv/demo/bin/python -m pip install -q -e ".[dev]"
.venv/demo/bin/python manage.py migrate -v0
.venv/demo/bin/python manage.py shell -c "from django.contrib.auth.models import User; User.objects.filter(username='admin').exists() or User.objects.create_superuser('admin', 'admin@example.com', 'admin')"
.venv/demo/bin/python manage.py taskworker --concurrency 2 --queues default,mail --beat &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT INT TERM
echo "Open http://127.0.0.1:8000/ (admin: http://127.0.0.1:8000/admin/, admin/admin)"
.venv/demo/bin/python manage.py runserver 127.0.0.1:8000
