//! `config_enum!`: config enums that deserialize from their snake_case names and, on a bad value,
//! list every allowed name (the `config` crate's own enum errors do not).

/// Declares a fieldless enum with its config names, `NAMES`, `as_str`, `Display` and serde impls.
macro_rules! config_enum {
    (pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every accepted config value, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The config value naming this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                match text.as_str() {
                    $($text => Ok($name::$variant),)+
                    other => Err(<D::Error as serde::de::Error>::unknown_variant(other, Self::NAMES)),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use config_enum;
