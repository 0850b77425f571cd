// Package deploy holds the deployment files (nginx/, runit/, sshd/,
// logrotate/) and the tests that run them for real: nginx with TLS in
// front of keepproxy, runit supervising keepproxy, keepstore and
// keeptunnel, logrotate rotating the audit file, and `make run`'s cluster
// script.
package deploy
