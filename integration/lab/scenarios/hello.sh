#!/bin/sh
echo "hello from $(hostname) vm=$WEAVER_VM/$WEAVER_VMS cwd=$(pwd) args:"; for a in "$@"; do echo " [$a]"; done
exit "${EXIT:-0}"
