#!/bin/sh
# The rabbitmq service's entrypoint: write definitions.json with each ${SMARTQ_RABBITMQ_*}
# placeholder replaced by that environment variable (RabbitMQ reads no password from the
# environment, and the repository keeps none), then start RabbitMQ as the image would.
set -eu
template=/etc/smartq/definitions.json
rendered=/tmp/smartq-rabbitmq/definitions.json

script=
for name in $(grep -o '\${SMARTQ_RABBITMQ_[A-Z0-9_]*}' "$template" | tr -d '${}' | sort -u); do
  value=$(printenv "$name" || true)
  case $value in
    "")
      echo "smartq: $name is not set; put it in .env (see .env.example)" >&2
      exit 1 ;;
    *[!A-Za-z0-9._~-]*)
      # It goes into the services' AMQP URLs as it is, and into JSON and sed here.
      echo "smartq: $name may hold only A-Z a-z 0-9 . _ ~ - (try: openssl rand -hex 24)" >&2
      exit 1 ;;
  esac
  script="$script"'s|\$[{]'"$name"'[}]|'"$value"'|g;'
done

umask 077
mkdir -p "$(dirname "$rendered")"
sed "$script" "$template" > "$rendered"
if [ "$(id -u)" = 0 ]; then
  chown -R rabbitmq:rabbitmq "$(dirname "$rendered")"
fi
exec docker-entrypoint.sh "$@"
