// Package strom holds the franz-go client tests against a real strom broker; the tests are in
// the _test.go files (`go test ./...`, with STROM_BIN naming the broker binary).
package strom
