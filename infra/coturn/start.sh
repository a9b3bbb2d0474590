#!/bin/sh
# Starts coturn with turnserver.conf plus what differs per deployment, read from the environment:
# the secret stays out of version control, out of the image and off the command line (anyone on
# the host can read a process's arguments).
#
#   VIDCLINIC_TURN_SECRET  required: the web processes' VIDCLINIC_TURN_SECRET (static-auth-secret)
#   TURN_PREVIOUS_SECRET   while rotating: the old secret, still accepted
#   TURN_REALM             required: the DNS name in VIDCLINIC_TURN_URLS (and the TLS certificate)
#   TURN_MEDIA_PEERS       the media nodes' addresses (VIDCLINIC_MEDIA_ADDRESSES of every media
#                          host), comma-separated: the only peers relayed to. Unset, any public
#                          address is (private and reserved ranges never are).
#   TURN_EXTERNAL_IP       public[/private] address, behind 1:1 NAT only
#   TURN_TLS_CERT, TURN_TLS_KEY  PEM files for turns: (TLS); without them, plain TURN only
#   TURN_CONFIG            default /etc/coturn/turnserver.conf
#   TURN_RUN_DIR           where the complete configuration (mode 0600), the pid file and coturn's
#                          (unused) user database go; default /tmp
#
# Further arguments go to turnserver as they are.
set -eu
: "${VIDCLINIC_TURN_SECRET:?set VIDCLINIC_TURN_SECRET: the same as the web processes'}"
: "${TURN_REALM:?set TURN_REALM: the TURN server's DNS name}"
for secret in "$VIDCLINIC_TURN_SECRET" "${TURN_PREVIOUS_SECRET:-}"; do
  case "$secret" in
    *[!A-Za-z0-9_.~+/=-]*) echo "TURN secrets: use letters, digits and _.~+/=- only" >&2; exit 2 ;;
  esac
done
conf="${TURN_RUN_DIR:-/tmp}/turnserver.conf"
umask 077
{
  cat "${TURN_CONFIG:-/etc/coturn/turnserver.conf}"
  echo
  echo "# Added by start.sh"
  echo "static-auth-secret=$VIDCLINIC_TURN_SECRET"
  if [ -n "${TURN_PREVIOUS_SECRET:-}" ]; then echo "static-auth-secret=$TURN_PREVIOUS_SECRET"; fi
  echo "realm=$TURN_REALM"
  echo "pidfile=${TURN_RUN_DIR:-/tmp}/turnserver.pid"
  echo "userdb=${TURN_RUN_DIR:-/tmp}/turndb"
  if [ -n "${TURN_MEDIA_PEERS:-}" ]; then
    # allowed-peer-ip wins over denied-peer-ip: every other address is refused (403).
    echo "denied-peer-ip=0.0.0.0-255.255.255.255"
    echo "denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    for peer in $(echo "$TURN_MEDIA_PEERS" | tr ',' ' '); do
      echo "allowed-peer-ip=$peer"
    done
  fi
  if [ -n "${TURN_EXTERNAL_IP:-}" ]; then echo "external-ip=$TURN_EXTERNAL_IP"; fi
  if [ -n "${TURN_TLS_CERT:-}" ]; then
    echo "cert=$TURN_TLS_CERT"
    echo "pkey=${TURN_TLS_KEY:?set TURN_TLS_KEY with TURN_TLS_CERT}"
  else
    echo "no-tls"
  fi
} > "$conf"
exec turnserver -c "$conf" --log-file=stdout "$@"
