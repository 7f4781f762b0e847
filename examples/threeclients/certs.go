package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// certValidity is how long the certificates made by "threeclients certs"
// and on first start are valid.
const certValidity = 10 * 365 * 24 * time.Hour

// certFiles are the PEM files of a certificates folder, by file name:
// ca.crt, and client-<id>.crt and client-<id>.key for every member.
type certFiles map[string][]byte

func certName(id string) string { return "client-" + id + ".crt" }
func keyName(id string) string  { return "client-" + id + ".key" }

// makeCerts makes an Ed25519 certificate authority and, for every member,
// an Ed25519 key and a certificate naming exactly that member (as its
// CommonName and its only DNS name), for TLS client and server auth. The
// authority's key is not kept: nobody can add a member to the folder later.
func makeCerts(members []string) (certFiles, error) {
	for _, id := range members {
		if err := checkCertID(id); err != nil {
			return nil, err
		}
	}
	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "threeclients ledger CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		IsCA:                  true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	files := certFiles{"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	for _, id := range members {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: randSerial(),
			Subject:      pkix.Name{CommonName: id},
			DNSNames:     []string{id},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(certValidity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			return nil, fmt.Errorf("certificate for client %s: %w", id, err)
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		files[certName(id)] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		files[keyName(id)] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	}
	return files, nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// checkCertID refuses ids that cannot name a certificate and a file:
// letters, digits, '-', '_' and '.' only, not starting with '.' or '-',
// at most 63 bytes.
func checkCertID(id string) error {
	ok := id != "" && len(id) <= 63 && id[0] != '.' && id[0] != '-'
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return fmt.Errorf("client id %s cannot name a certificate: use up to 63 letters, digits, '-', '_' or '.'", quoteID(id))
	}
	return nil
}

// writeCerts writes files (mode 0600) into dir, which it creates with mode
// 0700 if it does not exist. An existing dir that holds any of the files is
// refused unless force.
func writeCerts(dir string, files certFiles, force bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !force {
		for name := range files {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				return fmt.Errorf("%s already holds %s: not overwriting keys (give -force to replace every file)", dir, name)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	for name, data := range files {
		if err := writeFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that path is never half written and a symlink at path
// is replaced, not followed.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(mode)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// ensureAutoCerts returns the folder dir, creating it with fresh
// certificates for members if it does not exist. It is made in a temporary
// folder beside dir and renamed into place; a process that loses that race
// to another uses the winner's folder.
func ensureAutoCerts(dir string, members []string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	files, err := makeCerts(members)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".certs-tmp-*")
	if err != nil {
		return err
	}
	if err := writeCerts(tmp, files, false); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		if _, serr := os.Stat(dir); serr == nil {
			return nil // another process made it first
		}
		return fmt.Errorf("certificates folder: %w", err)
	}
	return nil
}
