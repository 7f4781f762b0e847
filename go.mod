module github.com/lamportledger/lamportledger

go 1.24.0

require (
	github.com/hashicorp/go-msgpack/v2 v2.1.2
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.41.0
	golang.org/x/term v0.40.0
)
