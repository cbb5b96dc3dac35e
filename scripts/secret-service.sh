# Sourced by test.sh: make sure gnome-keyring and dbus-daemon are installed, so the
# keystore tests (tests/storage) can start a real Secret Service on a private D-Bus
# session bus. The tests start and stop the daemons themselves; this only installs.
# Without root or apt-get it says so and the tests skip (or fail under CI=true).

enclave_secret_service_deps() {
    if command -v gnome-keyring-daemon >/dev/null 2>&1 && command -v dbus-daemon >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing gnome-keyring and dbus (a real Secret Service for the keystore tests)"
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnome-keyring dbus >/dev/null; then
            return 0
        fi
    fi
    echo "== gnome-keyring could not be installed: the keystore tests will skip (and fail under CI=true)"
}
