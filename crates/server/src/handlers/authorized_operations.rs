//! The operations a client is allowed on a resource, as Metadata, DescribeCluster,
//! DescribeGroups and ConsumerGroupDescribe report them when the request asks (KIP-430): a bit
//! field with bit `i` set for the ACL operation of code `i`. Strom has no authorizer yet, so it
//! answers as Kafka does without one: every operation the resource type supports. The ACL work
//! replaces [`allowed`].

/// A resource type that requests can ask authorized operations for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Cluster,
    Topic,
    Group,
}

/// The field's value when the client did not ask: "not provided", Kafka's default.
pub(crate) const NOT_PROVIDED: i32 = i32::MIN;

// Kafka's AclOperation codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// Kafka's `AclEntry.supportedOperations` for each resource type (as in Kafka 4.4).
fn supported(resource: Resource) -> &'static [u8] {
    match resource {
        Resource::Cluster => &[
            CREATE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            ALTER,
            DESCRIBE,
        ],
        Resource::Topic => &[
            READ,
            WRITE,
            CREATE,
            DESCRIBE,
            DELETE,
            ALTER,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        // Kafka 4 counts the group configs (KIP-848) among a group's operations.
        Resource::Group => &[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS],
    }
}

/// The operations this client may perform on `resource`, as a bit field.
pub(crate) fn allowed(resource: Resource) -> i32 {
    supported(resource).iter().fold(0, |bits, op| bits | 1 << op)
}

/// What the response carries: the allowed operations if the request asked for them, else
/// [`NOT_PROVIDED`].
pub(crate) fn answer(requested: bool, resource: Resource) -> i32 {
    if requested {
        allowed(resource)
    } else {
        NOT_PROVIDED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(ops: &[u8]) -> i32 {
        ops.iter().map(|op| 1 << op).sum()
    }

    #[test]
    fn bit_fields_are_kafkas_supported_operations() {
        assert_eq!(allowed(Resource::Topic), bits(&[3, 4, 5, 6, 7, 8, 10, 11]));
        assert_eq!(allowed(Resource::Group), bits(&[3, 6, 8, 10, 11]));
        assert_eq!(allowed(Resource::Cluster), bits(&[5, 7, 8, 9, 10, 11, 12]));
    }

    #[test]
    fn not_asked_is_not_provided() {
        for resource in [Resource::Cluster, Resource::Topic, Resource::Group] {
            assert_eq!(answer(false, resource), i32::MIN);
            assert!(answer(true, resource) > 0);
        }
    }
}
