#!/bin/sh
# Make the dynamic-security file on first start (the server's user, railcast-server, as its
# admin, with RAILCAST_MQTT_PASSWORD), then run mosquitto with the shipped configuration.
set -eu
data=/mosquitto/data
mkdir -p "$data"
if [ ! -f "$data/dynamic-security.json" ]; then
  : "${RAILCAST_MQTT_PASSWORD:?set RAILCAST_MQTT_PASSWORD (the server uses the same in mqtt_url)}"
  mosquitto_ctrl dynsec init "$data/dynamic-security.json" railcast-server "$RAILCAST_MQTT_PASSWORD" >/dev/null
fi
chown -R mosquitto "$data"
exec mosquitto -c /etc/mosquitto/railcast.conf
