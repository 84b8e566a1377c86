package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// serveSelfSigned writes a certificate and key for 127.0.0.1 into dir.
func serveSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leasehold test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLSWithAuthFile(t *testing.T) {
	bin := buildServeBinary(t)
	dir := t.TempDir()
	certFile, keyFile, pool := serveSelfSigned(t, dir)
	authFile := filepath.Join(dir, "auth")
	os.WriteFile(authFile, []byte("tls-test-token-0123456789 write *\n"), 0o600)
	p := startServe(t, bin, []string{"LEASEHOLD_AUTH_FILE=" + authFile},
		"--tls-cert", certFile, "--tls-key="+keyFile)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("got URL %s, want https", p.url)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx := context.Background()
	c := httpapi.NewClient(p.url, &httpapi.ClientOptions{HTTPClient: hc, Token: "tls-test-token-0123456789"})
	l, err := c.Acquire(ctx, "tls-test", &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatalf("Acquire over TLS with a token: %v", err)
	}
	if err := c.Release(ctx, "tls-test", l.Token); err != nil {
		t.Errorf("Release: %v", err)
	}
	anon := httpapi.NewClient(p.url, &httpapi.ClientOptions{HTTPClient: hc})
	if _, err := anon.Get(ctx, "tls-test"); !serveIsUnauthorized(err) {
		t.Errorf("Get without a token: got %v, want ErrUnauthorized", err)
	}
	if code, logs := p.stop(t); code != 0 || strings.Contains(logs, "tls-test-token") {
		t.Errorf("got exit %d, want 0 and no token in the logs:\n%s", code, logs)
	}
}

func serveIsUnauthorized(err error) bool {
	var ae *httpapi.AuthError
	return err != nil && errors.As(err, &ae) && ae.Status == 401
}

// rediss:// talks TLS to Redis, verifying its certificate against the
// system's roots (here SSL_CERT_FILE, which Go reads on Linux).
func TestServeOverRedisTLS(t *testing.T) {
	bin := buildServeBinary(t)
	dir := t.TempDir()
	certFile, keyFile, _ := serveSelfSigned(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	redistest.Start(t, "--tls-port", tlsPort, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")
	url := "rediss://127.0.0.1:" + tlsPort + "/0"

	p := startServe(t, bin, []string{"SSL_CERT_FILE=" + certFile}, "--redis", url)
	code, body, _ := servePost(t, p.url+"/v1/leases/over-tls/acquire?ttl=5s")
	_, logs := p.stop(t)
	if code != 200 || body["token"] == nil || !strings.Contains(logs, "tls=true") {
		t.Errorf("acquire over rediss://: %d %v; want a grant, and tls=true in the log:\n%s", code, body, logs)
	}

	// Without the certificate's root the server does not trust Redis.
	p = startServe(t, bin, []string{"SSL_CERT_FILE=" + filepath.Join(dir, "none.pem")}, "--redis", url, "--redis-timeout", "500ms")
	code, body, _ = servePost(t, p.url+"/v1/leases/over-tls/acquire?ttl=5s")
	_, logs = p.stop(t)
	if code != 503 || body["error"] != "backend_unavailable" || !strings.Contains(logs, "certificate") {
		t.Errorf("acquire over rediss:// with an untrusted certificate: %d %v; want 503 and a certificate error in the log:\n%s", code, body, logs)
	}
}

// TestServeAnswersNetHTTPEdgesAsJSON: the real server's answers that
// net/http gives before any handler (bad percent-encoding in the path,
// headers over 64 KiB, plain HTTP on the TLS port) are JSON error bodies.
func TestServeAnswersNetHTTPEdgesAsJSON(t *testing.T) {
	bin := buildServeBinary(t)
	plain := startServe(t, bin, nil)
	dir := t.TempDir()
	certFile, keyFile, _ := serveSelfSigned(t, dir)
	tlsd := startServe(t, bin, nil, "--tls-cert", certFile, "--tls-key", keyFile)
	for _, tt := range []struct {
		what, url, raw string
		status         int
	}{
		{"bad percent-encoding", plain.url, "GET /v1/leases/a%zzb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"a 70 KB header", plain.url, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("x", 70000) + "\r\n\r\n", 431},
		{"plain HTTP to the TLS port", strings.Replace(tlsd.url, "https://", "http://", 1), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	} {
		t.Run(tt.what, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(tt.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go c.Write([]byte(tt.raw))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			var body map[string]any
			if res.StatusCode != tt.status || res.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(b, &body) != nil || body["error"] != "invalid_request" || body["message"] == "" {
				t.Errorf("got %d %q %s, want %d application/json invalid_request", res.StatusCode, res.Header.Get("Content-Type"), b, tt.status)
			}
		})
	}
}
