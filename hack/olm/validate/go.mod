module example.com/database-operator/hack/olm/validate

go 1.24.6

require github.com/operator-framework/api v0.36.0
