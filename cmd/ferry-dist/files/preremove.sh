#!/bin/sh
# ferry package: stop the service before its binary goes (a removal, not an
# upgrade: deb passes "remove", rpm passes 0 packages left).
set -e
if [ -d /run/systemd/system ] && { [ "$1" = remove ] || [ "$1" = 0 ]; }; then
	systemctl disable --now ferry.service >/dev/null 2>&1 || true
fi
exit 0
