# The cascade daemon. Build: docker build -t cascade .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cascade /usr/local/bin/cascade
WORKDIR /etc/cascade
COPY cascade.toml ./
COPY channels ./channels
COPY policies ./policies
ENV CASCADE_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["cascade", "--config", "/etc/cascade/cascade.toml"]
CMD ["run"]
