#!/bin/sh
# ferry package: create the service user and its state directory, from the
# package's sysusers.d and tmpfiles.d entries where systemd is installed.
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers ferry.conf
elif ! getent passwd ferry >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/ferry --no-create-home \
		--shell /usr/sbin/nologin --comment "ferry event-streaming broker" ferry
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create ferry.conf
else
	install -d -m 0750 -o ferry -g ferry /var/lib/ferry
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade restarts a running service on the new binary.
	systemctl try-restart ferry.service >/dev/null 2>&1 || true
fi
exit 0
