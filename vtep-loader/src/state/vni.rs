//! A VNI's two lists, its flood list (remote VTEPs) and its local ports: lengths in VNIS,
//! members in FLOOD and VNI_PORTS at positions 0..len. The data path walks a list while
//! it changes, so every change keeps each member visible throughout: a new member is
//! written before the length covers it; a member leaves by the last one moving into its
//! place before the length shrinks (a walk in between sees the last member twice, never a
//! hole). A writer killed midway leaves at worst that duplicate or a slot past the end,
//! which [`Tables::repair_lists`] removes.

use std::collections::HashSet;

use aya::{
    maps::{HashMap, MapData},
    Pod,
};
use vtep_common::{Addr, Remote, Slot, VniLists, MAX_FLOOD, MAX_VNI_PORTS};

use super::{full, ignore_missing, tables::Tables, StateError, StateResult};

/// A member of one of a VNI's lists; its type says which list.
pub(super) trait Member: Pod {
    /// The list's name in errors, and the longest list the data path walks.
    const TABLE: &'static str;
    const LIMIT: u32;
    fn len(lists: &mut VniLists) -> &mut u32;
    fn slots(t: &mut Tables) -> (&mut HashMap<MapData, Slot, Self>, u32);
    /// What makes two members the same (a VTEP's address, a port's ifindex).
    type Id: Eq + std::hash::Hash;
    fn id(&self) -> Self::Id;
}

impl Member for Remote {
    const TABLE: &'static str = "flood list";
    const LIMIT: u32 = MAX_FLOOD;
    fn len(lists: &mut VniLists) -> &mut u32 {
        &mut lists.flood
    }
    fn slots(t: &mut Tables) -> (&mut HashMap<MapData, Slot, Self>, u32) {
        (&mut t.flood, t.capacity.flood_slots)
    }
    type Id = Addr;
    fn id(&self) -> Addr {
        self.ip
    }
}

/// A local port, by host-side ifindex.
impl Member for u32 {
    const TABLE: &'static str = "VNI port list";
    const LIMIT: u32 = MAX_VNI_PORTS;
    fn len(lists: &mut VniLists) -> &mut u32 {
        &mut lists.ports
    }
    fn slots(t: &mut Tables) -> (&mut HashMap<MapData, Slot, Self>, u32) {
        (&mut t.vni_ports, t.capacity.ports)
    }
    type Id = u32;
    fn id(&self) -> u32 {
        *self
    }
}

impl Tables {
    pub(super) fn lists(&self, vni: u32) -> VniLists {
        self.vnis.get(&vni, 0).unwrap_or_default()
    }

    fn list_len<V: Member>(&self, vni: u32) -> u32 {
        *V::len(&mut self.lists(vni))
    }

    fn set_len<V: Member>(&mut self, vni: u32, len: u32) -> StateResult<()> {
        let mut lists = self.lists(vni);
        *V::len(&mut lists) = len;
        if lists == VniLists::default() {
            return ignore_missing(self.vnis.remove(&vni));
        }
        let size = self.capacity.vnis;
        self.vnis.insert(vni, lists, 0).map_err(full("VNI", size))
    }

    /// The members of `vni`'s list, in order.
    pub(super) fn members<V: Member>(&mut self, vni: u32) -> StateResult<Vec<V>> {
        let len = self.list_len::<V>(vni);
        let (slots, _) = V::slots(self);
        (0..len)
            .map(|index| Ok(slots.get(&Slot { vni, index }, 0)?))
            .collect()
    }

    /// Appends `value` to `vni`'s list.
    pub(super) fn push<V: Member>(&mut self, vni: u32, value: V) -> StateResult<()> {
        let len = self.list_len::<V>(vni);
        if len >= V::LIMIT {
            return Err(StateError::Full {
                table: V::TABLE,
                size: V::LIMIT,
            });
        }
        let slot = Slot { vni, index: len };
        let (slots, size) = V::slots(self);
        slots.insert(slot, value, 0).map_err(full(V::TABLE, size))?;
        if let Err(e) = self.set_len::<V>(vni, len + 1) {
            ignore_missing(V::slots(self).0.remove(&slot))?;
            return Err(e);
        }
        Ok(())
    }

    /// Overwrites, in its place, the member that is the same as `value` (same address or
    /// ifindex); false when there is none.
    pub(super) fn update<V: Member>(&mut self, vni: u32, value: V) -> StateResult<bool> {
        let members: Vec<V> = self.members(vni)?;
        let Some(index) = members.iter().position(|m| m.id() == value.id()) else {
            return Ok(false);
        };
        V::slots(self).0.insert(
            Slot {
                vni,
                index: index as u32,
            },
            value,
            0,
        )?;
        Ok(true)
    }

    /// Removes the member at `index` of `vni`'s list: the last one takes its place.
    fn remove_at<V: Member>(&mut self, vni: u32, index: u32) -> StateResult<()> {
        let len = self.list_len::<V>(vni);
        if index >= len {
            return Ok(());
        }
        let last = Slot {
            vni,
            index: len - 1,
        };
        let (slots, _) = V::slots(self);
        if index != last.index {
            let moved = slots.get(&last, 0)?;
            slots.insert(Slot { vni, index }, moved, 0)?;
        }
        self.set_len::<V>(vni, last.index)?;
        ignore_missing(V::slots(self).0.remove(&last))
    }

    /// Removes the members of `vni`'s list that `gone` picks; returns them.
    pub(super) fn remove_where<V: Member>(
        &mut self,
        vni: u32,
        gone: impl Fn(&V) -> bool,
    ) -> StateResult<Vec<V>> {
        let members: Vec<V> = self.members(vni)?;
        let picked: Vec<usize> = (0..members.len()).filter(|&i| gone(&members[i])).collect();
        self.remove_indices::<V>(vni, &picked)?;
        Ok(picked.into_iter().map(|i| members[i]).collect())
    }

    /// Highest first: the member that moves into a freed place is then always one that
    /// stays.
    fn remove_indices<V: Member>(&mut self, vni: u32, ascending: &[usize]) -> StateResult<()> {
        for &index in ascending.iter().rev() {
            self.remove_at::<V>(vni, index as u32)?;
        }
        Ok(())
    }

    /// After a writer was killed mid-change: no member twice, no slot past a list's end.
    pub(super) fn repair_lists(&mut self) -> StateResult<()> {
        self.repair::<Remote>()?;
        self.repair::<u32>()
    }

    fn repair<V: Member>(&mut self) -> StateResult<()> {
        let vnis: Vec<u32> = self.vnis.keys().collect::<Result<_, _>>()?;
        for vni in vnis {
            let members: Vec<V> = self.members(vni)?;
            let mut seen = HashSet::new();
            let again: Vec<usize> = (0..members.len())
                .filter(|&i| !seen.insert(members[i].id()))
                .collect();
            self.remove_indices::<V>(vni, &again)?;
        }
        let (slots, _) = V::slots(self);
        let all: Vec<Slot> = slots.keys().collect::<Result<_, _>>()?;
        for s in all {
            if s.index >= self.list_len::<V>(s.vni) {
                ignore_missing(V::slots(self).0.remove(&s))?;
            }
        }
        Ok(())
    }
}
