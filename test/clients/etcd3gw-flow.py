"""etcd3gw (OpenStack's client for etcd's JSON gateway), used as its README
shows: a lease, a key on it, keep-alive, its keys, a lock taken, checked and
released, then the lease revoked. etcd3gw sends lease IDs as JSON numbers.
Prints one JSON line of what it saw; the test compares etcd's with the proxy's."""
import json
import sys

from etcd3gw.client import Etcd3Client

host, port = sys.argv[1].rsplit(":", 1)
prefix = sys.argv[2]
# Its default path, /v3alpha/, is gone from etcd 3.4 and 3.5: operators name /v3/.
client = Etcd3Client(host=host, port=int(port), api_path="/v3/")
seen = {}
lease = client.lease(ttl=60)
seen["lease_id_past_2_53"] = lease.id > 2**53
seen["put"] = client.put(prefix + "k", "v", lease=lease)
seen["ttl_positive"] = lease.ttl() > 0
seen["keys"] = [k.decode() if isinstance(k, bytes) else k for k in lease.keys()]
seen["refreshed"] = lease.refresh() > 0
lock = client.lock(prefix + "lock", ttl=60)
seen["acquired"] = lock.acquire()
seen["is_acquired"] = lock.is_acquired()
other = client.lock(prefix + "lock", ttl=60)
seen["other_holds_it"] = other.is_acquired()
seen["released"] = lock.release()
seen["released_again"] = lock.release()
seen["revoked"] = lease.revoke()
seen["after_revoke"] = client.get(prefix + "k")
print(json.dumps(seen, sort_keys=True))
