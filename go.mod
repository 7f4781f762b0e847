module github.com/lamportledger/lamportledger

go 1.24

require (
	github.com/hashicorp/go-msgpack/v2 v2.1.2
	go.uber.org/goleak v1.3.0
)
