//! Who is acting: a user and their role. Every object berth keeps (workspaces, missions, codebases,
//! tasks, workers, API tokens) belongs to one user; a user acts only on their own, an admin on all.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

/// The user behind a request (a login token or an API token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this principal may see and act on an object owned by `owner`.
    pub fn may_act_on(&self, owner: &str) -> bool {
        self.is_admin() || self.name == owner
    }

    /// The owner to filter listings by: `None` (everything) for an admin.
    pub fn listing_owner(&self) -> Option<&str> {
        (!self.is_admin()).then_some(self.name.as_str())
    }

    /// 403 unless an admin.
    pub fn require_admin(&self, what: &str) -> crate::error::ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden(format!(
                "{what} needs the admin role"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_act_on_their_own_and_admins_on_all() {
        let alice = Principal::new("alice", Role::User);
        let root = Principal::new("root", Role::Admin);
        assert!(alice.may_act_on("alice"));
        assert!(!alice.may_act_on("bob"));
        assert!(root.may_act_on("bob"));
        assert_eq!(alice.listing_owner(), Some("alice"));
        assert_eq!(root.listing_owner(), None);
        assert!(alice.require_admin("x").is_err());
        assert!(root.require_admin("x").is_ok());
    }
}
