# Sourced by the test scripts: installs the Debian packages given as COMMAND:PACKAGE
# pairs whose command is missing (a command may be a path), as root with apt-get only,
# in one apt run that waits for another apt or dpkg (a second test script, unattended
# upgrades) instead of failing on its lock. Elsewhere it installs nothing: the tests
# that need a missing package skip and say why.
missing=()
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_lock=(-o DPkg::Lock::Timeout=600)
    { apt-get "${apt_lock[@]}" update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get "${apt_lock[@]}" install -y -qq "${missing[@]}"; } \
        >/dev/null 2>&1 || echo "warning: could not install ${missing[*]}; the tests that" \
            "need them skip" >&2
fi
