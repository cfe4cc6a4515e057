# Shared by autobahn/run.sh and tests/browser/run.sh (sourced, not run):
#
#   ensure_venv VENV REQUIREMENTS MODULE
#
# makes VENV a Python venv holding exactly REQUIREMENTS (a pip requirements file) in
# which MODULE imports. A venv is reused when it holds a copy of REQUIREMENTS identical
# to the current one; otherwise it is (re)filled. When `python3 -m venv` fails, as on
# a bare Debian, python3-venv is installed with apt-get (if we are root) and it is
# tried once more.
#
# The caller defines log and die. PYTHON picks the interpreter (default python3).

ensure_venv() {
    local venv=$1 reqs=$2 module=$3 python=${PYTHON:-python3}
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    if [[ -x $venv/bin/python ]] && cmp -s "$reqs" "$venv/requirements.txt" &&
        "$venv/bin/python" -c "import $module" 2>/dev/null; then
        log "reusing $venv"
        return 0
    fi
    if ! [[ -x $venv/bin/python ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        rm -rf "$venv"
        log "creating $venv"
        if ! "$python" -m venv "$venv"; then
            # Debian ships `venv` without `ensurepip` until python3-venv is installed.
            rm -rf "$venv"
            [[ $(id -u) == 0 ]] || die "cannot create a venv with $python: apt-get install python3-venv (as root)"
            log "apt-get install python3-venv"
            DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq python3-venv >/dev/null ||
                die "apt-get install python3-venv failed"
            "$python" -m venv "$venv" || die "cannot create a venv with $python"
        fi
    fi
    log "pip install -r $reqs"
    timeout 300 "$venv/bin/python" -m pip install --quiet -r "$reqs" ||
        die "pip install -r $reqs failed"
    cp "$reqs" "$venv/requirements.txt"
    "$venv/bin/python" -c "import $module" 2>/dev/null || die "$module is not importable from $venv"
}
