// Package securetest holds the test that runs the pipeline against a Kafka broker that only
// lets clients in over SASL/SCRAM-SHA-512 with TLS, and a redis-server that serves TLS only to
// an ACL user, both started by the test with certificates it makes itself (secure_test.go).
// It has no code of its own.
package securetest
