// Package deploy holds the deployment files (nginx/, runit/) and the tests
// that run them for real: nginx with TLS in front of keepproxy, runit
// supervising keepproxy and keepstore, and `make run`'s cluster script.
package deploy
