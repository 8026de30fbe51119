{{ definition }}
