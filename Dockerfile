# Multi-stage build of railcast: the server and the train simulator on a slim runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bins \
 && cp target/release/railcast-server target/release/railcast-train-sim /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 railcast
COPY --from=build /usr/local/bin/railcast-server /usr/local/bin/railcast-train-sim /usr/local/bin/
USER railcast
ENV RAILCAST_HTTP_ADDR=0.0.0.0:8080 RAILCAST_QUIC_ADDR=0.0.0.0:4433
ENV RAILCAST_WEBRTC_BIND_IP=0.0.0.0 RAILCAST_WEBRTC_UDP_PORTS=50000-50099
EXPOSE 8080/tcp 4433/udp 50000-50099/udp
ENTRYPOINT ["railcast-server"]
