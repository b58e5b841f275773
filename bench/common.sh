# Managed in the MDUS platform repository: bench/common.sh (sourced by bench/provision
# and bench/one_host). The strategy of the Makefile (MITOGEN=0: Ansible's own) and the
# figures both scripts print from their ansible-playbook logs.
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
if [ "${MITOGEN:-1}" = 1 ]; then export ANSIBLE_STRATEGY=mitogen_linear; else export ANSIBLE_STRATEGY=linear; fi

# Sum of changed= over the PLAY RECAP of a log.
changed_sum() { grep ' : ok=' "$1" | sed -E 's/.*changed=([0-9]+).*/\1/' | awk '{s+=$1} END {print s}'; }
# Seconds between two `date +%s.%N` stamps.
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%6.1f", b - a}'; }
# The ten slowest tasks of a log (profile_tasks summary).
slowest() { echo "slowest tasks of the re-run:"; grep -E ' -+ [0-9.]+s$' "$1" | head -10; }
