#!/usr/bin/env bash
# PostgreSQL for the pgstore tests: a throwaway cluster in a temporary
# directory, on a loopback port, with no system service.
#
# Sourced (by .ci/run; safe under set -euo pipefail), it defines two
# functions:
#
#	pg_start   install PostgreSQL from Debian's packages if no pg_ctl is
#	           found, initdb a cluster in a temporary directory (as the
#	           postgres user when run as root: initdb refuses root), start
#	           it on 127.0.0.1:$PG_PORT, create a database and a
#	           password-less login role, and export LEDGER_PG_URL.
#	           Calling it again while the cluster runs only re-exports
#	           the URL.
#	pg_stop    stop the cluster and remove its directory.
#
# Executed, it takes a command:
#
#	.ci/postgres.sh test [go test flags]   pg_start, go test ./pgstore/, pg_stop
#	eval "$(.ci/postgres.sh start)"        start, and set LEDGER_PG_URL here
#	.ci/postgres.sh stop                   stop what start started
#
# The cluster runs with fsync off (it is thrown away) and with an ICU
# (linguistic) default collation where the server supports it, so that a
# query or column that forgets COLLATE "C" sorts wrongly and fails the
# tests instead of passing by luck.
#
# Settings (environment): PG_PORT (default 54329), PG_ROLE and PG_DB
# (default walletledger).

PG_PORT=${PG_PORT:-54329}
PG_ROLE=${PG_ROLE:-walletledger}
PG_DB=${PG_DB:-walletledger}

# The cluster's directory is recorded here, so that pg_start and pg_stop
# work from different shells.
_pg_state() { echo "${TMPDIR:-/tmp}/walletledger-pg-$PG_PORT.dir"; }

_pg_log() { echo "postgres.sh: $*" >&2; }

# _pg_bindir prints the directory of PostgreSQL's server binaries.
_pg_bindir() {
	local p d
	if p=$(command -v pg_ctl 2>/dev/null); then
		d=$(dirname "$(readlink -f "$p")")
		if [ -x "$d/initdb" ] && [ -x "$d/pg_isready" ] && [ -x "$d/psql" ]; then
			echo "$d"
			return 0
		fi
	fi
	# Debian keeps them off PATH, one directory per major version.
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1) || true
	if [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
		echo "$d"
		return 0
	fi
	return 1
}

_pg_install() {
	if [ "$(id -u)" != 0 ]; then
		_pg_log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
		return 1
	fi
	command -v apt-get >/dev/null || { _pg_log "no pg_ctl and no apt-get: install PostgreSQL"; return 1; }
	_pg_log "installing PostgreSQL from Debian's packages"
	# No cluster of the package's own, and no service: tests start theirs.
	mkdir -p /etc/postgresql-common
	[ -e /etc/postgresql-common/createcluster.conf ] ||
		echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq &&
		apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >/dev/null
}

# _pg_as_owner runs a command as the cluster's owner: postgres when we are
# root, ourselves otherwise. It runs from / so that the postgres user
# needs no access to our working directory.
_pg_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		if command -v runuser >/dev/null; then
			(cd / && runuser -u postgres -- "$@")
		else
			(cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
		fi
	else
		(cd / && "$@")
	fi
}

_pg_url() { echo "postgres://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"; }

pg_start() {
	local bin dir state
	state=$(_pg_state)
	if ! bin=$(_pg_bindir); then
		_pg_install || return 1
		bin=$(_pg_bindir) || { _pg_log "PostgreSQL installed but its binaries are not under /usr/lib/postgresql/*/bin"; return 1; }
	fi

	# Already running (from this shell or another): reuse it.
	if [ -f "$state" ] && dir=$(cat "$state") && [ -d "$dir/data" ] &&
		_pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		PG_DIR=$dir
		export LEDGER_PG_URL
		LEDGER_PG_URL=$(_pg_url)
		return 0
	fi
	if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1; then
		_pg_log "port $PG_PORT is taken by a server this script did not start; set PG_PORT"
		return 1
	fi

	dir=$(mktemp -d "${TMPDIR:-/tmp}/walletledger-pg.XXXXXX") || return 1
	mkdir -p "$dir/sock"
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres:postgres "$dir" || return 1
	fi
	echo "$dir" >"$state"
	PG_DIR=$dir

	# A linguistic default collation when the server has ICU (15+), so that
	# missing COLLATE "C" shows; otherwise the C.UTF-8 locale.
	local -a locale=(--locale=C.UTF-8)
	local help
	help=$("$bin/initdb" --help 2>/dev/null) || true
	case $help in
	*--locale-provider*) locale=(--locale-provider=icu --icu-locale=en-US --locale=C.UTF-8) ;;
	esac
	if ! _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 "${locale[@]}" >"$dir/initdb.log" 2>&1; then
		if [ "${locale[0]}" != --locale=C.UTF-8 ] &&
			rm -rf "${dir:?}/data" &&
			_pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
			:
		else
			cat "$dir/initdb.log" >&2
			pg_stop
			return 1
		fi
	fi

	local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir/sock"
	opts+=" -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	if ! _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null; then
		cat "$dir/server.log" >&2
		pg_stop
		return 1
	fi
	if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 30; then
		_pg_log "server did not become ready"
		cat "$dir/server.log" >&2
		pg_stop
		return 1
	fi

	# A login role without superuser rights, owning its database: pgstore
	# needs no more.
	if ! "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
		-c "CREATE ROLE \"$PG_ROLE\" LOGIN" \
		-c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_ROLE\"" >/dev/null; then
		pg_stop
		return 1
	fi
	export LEDGER_PG_URL
	LEDGER_PG_URL=$(_pg_url)
	_pg_log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT in $dir"
}

pg_stop() {
	local bin dir state
	state=$(_pg_state)
	dir=${PG_DIR:-}
	if [ -z "$dir" ] && [ -f "$state" ]; then
		dir=$(cat "$state")
	fi
	if [ -n "$dir" ] && [ -d "$dir" ]; then
		if [ -d "$dir/data" ] && bin=$(_pg_bindir); then
			_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
		fi
		rm -rf "$dir"
	fi
	rm -f "$state"
	unset PG_DIR LEDGER_PG_URL
	return 0
}

_pg_main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	test)
		cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
		pg_start || exit 1
		trap pg_stop EXIT
		go test "$@" ./pgstore/
		;;
	start)
		pg_start >&2 || exit 1
		echo "export LEDGER_PG_URL='$LEDGER_PG_URL'"
		;;
	stop)
		pg_stop
		;;
	*)
		echo "usage: $0 test [go test flags] | start | stop   (or source it for pg_start and pg_stop)" >&2
		exit 2
		;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	_pg_main "$@"
fi
