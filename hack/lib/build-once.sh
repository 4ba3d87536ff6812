# Sourced by the hack/*/install.sh scripts that build a tool once into the
# project's cache: `build_once DIR NAME COMMAND...` runs COMMAND (which
# must write DIR/NAME.tmp) under a lock unless DIR/NAME exists, moves the
# result into place, and prints the tool's path. Concurrent callers (tests
# running in parallel) wait for the one that builds.
build_once() {
  local dir=$1 name=$2
  shift 2
  if [[ ! -x "${dir}/${name}" ]]; then
    mkdir -p "${dir}"
    exec 7>"${dir}/.build.lock"
    flock 7
    if [[ ! -x "${dir}/${name}" ]]; then
      local t=$SECONDS
      "$@" >&2
      mv -f "${dir}/${name}.tmp" "${dir}/${name}"
      echo "${name}: built ${dir}/${name} ($(( SECONDS - t ))s)" >&2
    fi
    exec 7>&-
  fi
  echo "${dir}/${name}"
}
