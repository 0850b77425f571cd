// Package e2e holds end-to-end tests that start real keepproxy and
// keepstore processes (and, where the test says so, a test API server) on
// loopback and talk to them over HTTP, as clients do.
package e2e
