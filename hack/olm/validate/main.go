// Command validate checks an OLM bundle with the operator-framework's own
// validators (github.com/operator-framework/api, what `operator-sdk bundle
// validate` runs): the default bundle suite, OperatorHub's
// (`--select-optional suite=operatorframework`: operatorhub, categories,
// capabilities, good practices, deprecated APIs) for the given Kubernetes
// version. Prints every error and warning; exits 1 on any error.
//
//	validate <bundle dir> <kubernetes version>
package main

import (
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: validate <bundle dir> <kubernetes version>")
		os.Exit(2)
	}
	bundle, err := manifests.GetBundleFromDir(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "reading the bundle: %v\n", err)
		os.Exit(1)
	}
	objects := append(bundle.ObjectsToValidate(), map[string]string{"k8s-version": os.Args[2]})
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCategoriesValidator,
		validation.StandardCapabilitiesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
	)
	failed := false
	checked := 0
	for _, result := range validators.Validate(objects...) {
		checked++
		for _, e := range result.Errors {
			failed = true
			fmt.Printf("error: %s: %s\n", result.Name, e.Error())
		}
		for _, w := range result.Warnings {
			fmt.Printf("warning: %s: %s\n", result.Name, w.Error())
		}
	}
	fmt.Printf("%d validations run on %s\n", checked, os.Args[1])
	if failed {
		os.Exit(1)
	}
}
