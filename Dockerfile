# syntax=docker/dockerfile:1
#
# Leasehold server image: a static binary on distroless, as a non-root user.
#
#   docker build -t leasehold .
#   docker run --rm -p 7070:7070 leasehold --redis redis://redis.internal:6379/0
#
# Arguments after the image name are appended to `leasehold serve`. It
# listens on 0.0.0.0:7070 by the image's LEASEHOLD_LISTEN, which -e
# LEASEHOLD_LISTEN=... or --listen replaces. Every flag can also come from a
# LEASEHOLD_* environment variable, e.g. -e LEASEHOLD_REDIS=redis://... .
# Without a Redis flag the server runs on its embedded in-memory store.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/leasehold ./cmd/leasehold

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/leasehold /usr/local/bin/leasehold
USER nonroot:nonroot
ENV LEASEHOLD_LISTEN=0.0.0.0:7070
EXPOSE 7070
# Ready when the server answers GET /readyz (it and its Redis are up); health
# finds the server by LEASEHOLD_LISTEN. With TLS on, override it.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/leasehold", "health", "--timeout", "5s"]
ENTRYPOINT ["/usr/local/bin/leasehold", "serve"]
